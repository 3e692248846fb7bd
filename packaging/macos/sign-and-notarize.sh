#!/usr/bin/env bash
# Sign, notarize and staple the macOS app, then wrap it in a signed, notarized and stapled .dmg.
# Runs on a Mac with Xcode's command-line tools, after `python packaging/build.py macos`.
#
#   packaging/macos/sign-and-notarize.sh ["dist/aidevops Local Models.app"]
#
# Needs, in the environment:
#   SIGN_IDENTITY    the Developer ID Application certificate in the login keychain, e.g.
#                    "Developer ID Application: Example Ltd (ABCDE12345)"  (see: security find-identity -v -p codesigning)
#   NOTARY_PROFILE   a notarytool keychain profile, made once with
#                    xcrun notarytool store-credentials aidevops-notary --apple-id ... --team-id ... --password ...
#                    (an app-specific password; or --key/--key-id/--issuer for an App Store Connect API key)
# Produces dist/aidevops-local-<version>-macos-<arch>.dmg. Takes a few minutes: Apple notarizes twice (the
# app, so that the copy inside the image is stapled too, then the image).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
app="${1:-$root/dist/aidevops Local Models.app}"
entitlements="$here/entitlements.plist"

die() { echo "sign-and-notarize: $*" >&2; exit 1; }

[[ "$(uname -s)" == "Darwin" ]] || die "run this on macOS (codesign, notarytool and hdiutil are Apple's)"
[[ -d "$app" ]] || die "no app at $app: run python packaging/build.py macos first"
: "${SIGN_IDENTITY:?set SIGN_IDENTITY to a Developer ID Application identity}"
: "${NOTARY_PROFILE:?set NOTARY_PROFILE to a notarytool keychain profile}"
for tool in codesign xcrun hdiutil ditto plutil file; do
    command -v "$tool" >/dev/null || die "$tool not found (install Xcode's command-line tools)"
done

plist="$app/Contents/Info.plist"
version="$(plutil -extract CFBundleShortVersionString raw "$plist")"
bundle_id="$(plutil -extract CFBundleIdentifier raw "$plist")"
[[ "$(plutil -extract LSUIElement raw "$plist")" == "true" ]] || die "Info.plist lacks LSUIElement"
executable="$app/Contents/MacOS/$(plutil -extract CFBundleExecutable raw "$plist")"
"$executable" --version | grep -qx "aidevops-local $version" || die "the app's --version is not $version"

arch="$(uname -m)"
dist="$(dirname "$app")"
dmg="$dist/aidevops-local-$version-macos-$arch.dmg"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

sign() {  # sign PATH...: hardened runtime, secure timestamp, our entitlements
    codesign --force --timestamp --options runtime --entitlements "$entitlements" \
        --sign "$SIGN_IDENTITY" "$@"
}

echo "== signing $bundle_id $version, inside out"
# Every Mach-O file (leaves: the order among them does not matter), then each framework, then the app
# itself: codesign --deep is not meant for distribution, and an outer signature seals signed contents.
while IFS= read -r -d '' f; do
    if file -b "$f" | grep -q "Mach-O"; then
        sign "$f"
    fi
done < <(find "$app/Contents" -type f ! -path "*/_CodeSignature/*" -print0)
while IFS= read -r -d '' framework; do
    sign "$framework"
done < <(find "$app/Contents" -type d -name "*.framework" -print0)
sign "$app"
codesign --verify --deep --strict --verbose=2 "$app"

notarize() {  # notarize FILE: submit, wait, and show Apple's log when it is not accepted
    local out id status
    out="$(xcrun notarytool submit "$1" --keychain-profile "$NOTARY_PROFILE" --wait --output-format plist)"
    id="$(plutil -extract id raw - <<<"$out")"
    status="$(plutil -extract status raw - <<<"$out")"
    if [[ "$status" != "Accepted" ]]; then
        xcrun notarytool log "$id" --keychain-profile "$NOTARY_PROFILE" >&2 || true
        die "notarization of $(basename "$1") ended $status (submission $id)"
    fi
    echo "notarized $(basename "$1") (submission $id)"
}

echo "== notarizing the app"
ditto -c -k --keepParent "$app" "$work/app.zip"
notarize "$work/app.zip"
xcrun stapler staple "$app"

echo "== building $dmg"
mkdir "$work/image"
ditto "$app" "$work/image/$(basename "$app")"
ln -s /Applications "$work/image/Applications"
rm -f "$dmg"
hdiutil create -volname "aidevops Local Models $version" -srcfolder "$work/image" -fs HFS+ -format UDZO \
    -imagekey zlib-level=9 -ov "$dmg"
codesign --force --timestamp --sign "$SIGN_IDENTITY" "$dmg"

echo "== notarizing the image"
notarize "$dmg"
xcrun stapler staple "$dmg"

echo "== checking as Gatekeeper will"
spctl --assess --type execute --verbose=2 "$app"
spctl --assess --type open --context context:primary-signature --verbose=2 "$dmg"
xcrun stapler validate "$dmg"
echo "done: $dmg ($(du -h "$dmg" | cut -f1))"

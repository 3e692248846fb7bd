from aidevops_local.cli.main import main

raise SystemExit(main())

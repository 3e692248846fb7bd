"""Beyond one machine, on llama.cpp's own RPC backend: a worker machine runs the runtime's RPC server
(worker.py), the main machine reaches it through an SSH tunnel or, on a trusted network, directly (pool.py,
tunnels.py), asks it what devices and free memory it has (devices.py), and llama-server offloads layers to it
with ``--rpc``, planned by the same fit as a GPU. The RPC server has no authentication: it only ever listens
on 127.0.0.1 unless the user names another address.
"""

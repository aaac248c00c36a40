"""What starts and reaches Ray clusters: `cluster.local` runs a multi-node cluster on one machine.

>>> from cluster.local import LocalCluster
>>> with LocalCluster(workers=1, cpus_per_node=1) as c:  # doctest: +SKIP
...     print(c.dashboard_url, c.env["RAY_AUTH_TOKEN_PATH"])
"""

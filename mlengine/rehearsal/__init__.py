"""`mlengine rehearse`: the cluster run rehearsed on the local Docker engine."""

"""Training snapshots kept in the repository, and the script that makes them (``snapshot``)."""

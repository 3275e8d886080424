"""Clusters (LocalCluster) and the command line (``shoal scheduler``, ``shoal worker``)."""

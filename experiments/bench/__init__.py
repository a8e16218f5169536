"""The benchmark harness: datasets as documents + questions, metrics, protocols, the runner and reports."""

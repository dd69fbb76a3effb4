"""Production monitoring: the features the service logs, drift, output drift, realised and
estimated performance, and the decision to retrain (notebooks/05_monitor.ipynb)."""

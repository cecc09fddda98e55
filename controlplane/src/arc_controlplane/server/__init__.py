"""The server layer: uvicorn over HTTPS on a socket we bind (``serve.py``), and the guards on
its connections (``connections.py``)."""

"""HTTP API routers, one module per resource (later: the ARM ``Microsoft.HybridCompute`` subset)."""

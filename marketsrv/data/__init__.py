"""Data files shipped with marketsrv (the default instrument universe)."""

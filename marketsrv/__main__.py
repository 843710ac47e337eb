from marketsrv.cli import run

run()

from bt_flywheel.cli import run

run()

"""``python -m estateflow`` runs the command line."""

from estateflow.cli import main

main(prog_name="estateflow")

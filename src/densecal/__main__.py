"""``python -m densecal`` runs the command-line tool."""

from densecal.cli.main import main

main()

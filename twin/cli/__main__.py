"""``python -m twin.cli`` runs the ``twin`` command."""

from . import main

main()

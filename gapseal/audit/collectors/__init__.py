"""One collector module per facts domain; ``gapseal.audit.collect`` runs them all."""

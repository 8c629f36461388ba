"""The CLI's sub-applications, one module per command group. Only these and ``gapseal.cli`` print."""

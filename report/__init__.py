"""The command-line report: every probe on one or more checkpoints as one offline HTML page plus
the numbers (``python -m report --help``). Above ``probes`` and ``figures``, below nothing."""

"""Reference services that ``make soak`` and ``edge-rbmlp bench-http --against`` measure our service
against, in the same run (issue 10): what a user would otherwise deploy."""

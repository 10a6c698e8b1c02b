"""Pure Tahoe-LAFS formats and algorithms: no I/O, no reactor, no twisted or foolscap."""

"""The ``deepfeat`` command line: one module per subcommand (installed as ``deepfeat.cli``)."""

"""The sample repositories below hold their own tests, run by the harness in its sandbox: never collect them here."""

collect_ignore_glob = ["*"]

"""The sample repositories below hold their own (partly failing on purpose) tests: never collect them."""

collect_ignore_glob = ["*"]

"""A small Python helper: the repository is mostly TypeScript, Go and Rust."""


def shout(text):
    return text.upper() + "!"

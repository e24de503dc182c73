"""infiller's repository half: the tree-sitter index, cross-file retrieval and prompt budgeting.

Never imports pygls or llama_cpp: token counting is passed in as a callable.
"""

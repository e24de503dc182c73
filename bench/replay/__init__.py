"""The typing replay: a simulated user types real code into a completion engine and takes its suggestions.

`keys` (when each key is pressed), `accept` (what the user takes), `metrics` (what the run says) are
pure; `corpus` fetches the files, `engine` plays the user against a `Driver`, `lsp_driver` drives
infiller over LSP stdio; the llama.vim-style peer lives in `bench/peer/`.
"""

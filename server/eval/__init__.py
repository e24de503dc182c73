"""`infiller eval`: completion quality on the user's own repository, measured and tuned.

masking (context/masking.py) picks the cases; `repo` prepares the repository and its leak-free
scratch copy; `configs` names the prompt configurations compared; `runner` runs them; `execute`
puts completions back and runs the covering tests in the sandbox; `metrics`, `report` and
`chart` score and show; `tune` writes the winning configuration to the workspace settings file.
"""

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Copy files between two folders, keeping their times.")
    parser.add_argument(
        "source",
        help="the folder to copy from (it must exist and be readable by the current user)",
    )
    parser.add_argument(
        "destination",
        help="the folder to copy into (it is created when missing, with its parents)",
    )
    parser.add_argument

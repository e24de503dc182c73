"""Greetings (test data for the Neovim client tests, with a scripted model)."""


def welcome(name: str) -> str:
    return f"Welcome, {name}!"


def greet(name: str) -> str:
    greeting = 
    return greeting


def farewell(name: str) -> str:


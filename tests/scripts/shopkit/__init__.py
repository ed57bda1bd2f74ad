"""A package of the program's own code, imported by questions_app.py."""

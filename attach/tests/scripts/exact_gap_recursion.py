"""Calls into code that is not traced from every level of a recursion, direct and
through another function: each call's gaps are its own, whichever call of the same
function ends first: each call of `descend` calls os.path.join twice, each call of
`through` os.path.basename once."""

import os.path


def descend(n):
    os.path.join("a", "b")
    if n:
        descend(n - 1)
    os.path.join("c", "d")


def through(n):
    os.path.basename("x/y")
    if n:
        middle(n)


def middle(n):
    through(n - 1)


descend(3)
through(2)
print("done")

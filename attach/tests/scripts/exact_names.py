"""Target of attach/tests/exact.rs: methods run by subclasses, classmethods, private
and generator methods, a metaclass's methods, functions that take `self` without
being its class's methods, and a named thread, so that every interpreter names each
function by the class that defines it (3.11's co_qualname) and the thread by its
Python name. Prints what it computed."""

import threading


class Shape:
    def scaled(self, k):
        return k * self.size()

    def size(self):
        return 1

    @classmethod
    def make(cls):
        return cls()

    def __hidden(self):
        return 2

    def hidden(self):
        return self.__hidden()


class Square(Shape):
    def size(self):
        return 4


class Fetcher:
    def fetch(self):
        yield 1
        yield 2


class Meta(type):
    def __call__(cls, *args):
        return super().__call__(*args)

    def describe(cls):
        return cls.__name__


class Vec(metaclass=Meta):
    pass


class Unrelated:
    def method(self):
        return 5


def helper(self):
    return type(self).__name__


def worker(results):
    results.append(Square().scaled(2))


def main():
    square = Square.make()
    print(square.scaled(3), Shape().scaled(3), square.hidden())
    print(list(Fetcher().fetch()))
    Vec()
    print(Vec.describe(), helper(square), Unrelated.method(square))
    results = []
    thread = threading.Thread(target=worker, args=(results,), name="named-worker")
    thread.start()
    thread.join()
    print(results)


main()

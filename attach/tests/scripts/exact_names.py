"""Target of attach/tests/exact.rs: methods run by subclasses, classmethods, private
and generator methods, and a named thread, so that every interpreter names each
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


def worker(results):
    results.append(Square().scaled(2))


def main():
    square = Square.make()
    print(square.scaled(3), Shape().scaled(3), square.hidden())
    print(list(Fetcher().fetch()))
    results = []
    thread = threading.Thread(target=worker, args=(results,), name="named-worker")
    thread.start()
    thread.join()
    print(results)


main()

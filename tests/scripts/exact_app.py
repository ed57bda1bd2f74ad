"""A program for `tracer record --exact`: known calls, values, a caught exception, a
generator and a non-zero exit, with output on stdout and stderr."""
import json
import sys


class PaymentError(Exception):
    pass


def charge(amount):
    if amount > 100:
        raise PaymentError(f"amount {amount} over limit")
    return amount * 2


def checkout(amounts):
    results = []
    for amount in amounts:
        try:
            results.append(charge(amount))
        except PaymentError as e:
            results.append(str(e))
    return results


def squares(n):
    for i in range(n):
        yield i * i


def main():
    print(json.dumps({"checkout": checkout([10, 250, 30]), "squares": list(squares(3))}))
    sys.stderr.write(f"argv {sys.argv[1:]} file {__file__.rsplit('/', 1)[-1]}\n")
    sys.exit(3)


if __name__ == "__main__":
    main()

"""Library-heavy workload of bench/exact, after pyperformance's regex_v8 and
regex_effbot: the time goes into the re module's C engine, called from a small loop
of the program's own. `python bm_regex.py N` runs the loop N times."""

import re
import sys

PATTERNS = [
    (r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", "host 10.0.12.7 and 192.168.1.254 up"),
    (r"([a-z0-9._%+-]+)@([a-z0-9.-]+)\.([a-z]{2,})", "write to someone.else@example.org today"),
    (r"(?i)\b(error|warn(?:ing)?|fatal)\b:?\s*(.*)", "2024-01-01 WARNING: disk almost full"),
    (r"^(GET|POST|PUT) (/[^ ]*) HTTP/(\d\.\d)$", "POST /api/v1/items?id=42 HTTP/1.1"),
    (r"(\w+)=(\"[^\"]*\"|\S+)", 'a=1 b="two words" c=three d="4"'),
]
TEXT = " ".join(text for _, text in PATTERNS) * 20


def scan(compiled):
    found = 0
    for pattern, text in compiled:
        for match in pattern.finditer(text):
            found += len(match.groups())
        found += len(pattern.findall(TEXT))
        if pattern.search(text):
            found += 1
    return found


def main():
    compiled = [(re.compile(p), t) for p, t in PATTERNS]
    total = 0
    for _ in range(int(sys.argv[1])):
        total += scan(compiled)
    print(total)


main()

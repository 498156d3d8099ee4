"""Scrapes a Prometheus endpoint over HTTP and parses it with prometheus_client's own text parser.

Usage: prometheus_scrape.py URL [OUT]
Prints (or writes to OUT) one JSON object: {"status", "content_type", "text", "families": {name: {"type", "help",
"samples": [{"name", "labels", "value"}]}}}. Exits non-zero if the text does not parse.
"""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=10) as response:
        status = response.status
        content_type = response.headers.get("Content-Type", "")
        text = response.read().decode("utf-8")
    families = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = {
            "type": family.type,
            "help": family.documentation,
            "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in family.samples],
        }
    out = json.dumps({"status": status, "content_type": content_type, "text": text, "families": families})
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(out)
    else:
        print(out)


if __name__ == "__main__":
    main()

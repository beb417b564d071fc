"""Daemon logging: one line per event, plain text or JSON (``--log-json``)."""

import json
import logging
import sys
import time

#: The logger every daemon module logs under.
ROOT = "partnner_tf.runtime.cloud"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, plus the record's ``fields``."""

    def format(self, record):
        line = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger message k=v ...`` on one line."""

    converter = time.gmtime

    def __init__(self):
        super().__init__("%(asctime)sZ %(levelname)s %(name)s %(message)s")

    def format(self, record):
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            text += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return text.replace("\n", " | ")


def setup(json_lines=False, level=logging.INFO):
    """Send the daemon's logs to stderr (stdout carries only the READY line)."""
    logger = logging.getLogger(ROOT)
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def event(logger, level, message, **fields):
    """Log one event with structured fields."""
    logger.log(level, message, extra={"fields": fields})

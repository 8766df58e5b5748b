"""Python ``logging`` -> the node's ROS logger, so recon_ros's log lines reach /rosout and the console.

Everything below ``recon_ros/nodes`` logs through ``logging.getLogger("recon_ros...")`` (it must not
import rclpy); ROS users look at /rosout, ``ros2 topic echo /rosout`` and the launch console, which
only see the rcutils logger. This handler forwards each record with its level to the node's logger.
"""

from __future__ import annotations

import logging
from typing import Any


class RosLogHandler(logging.Handler):
    """Forwards records to an rclpy logger (``node.get_logger()``); never raises into the caller."""

    def __init__(self, ros_logger: Any):
        super().__init__(logging.DEBUG)
        self.ros_logger = ros_logger
        self.setFormatter(logging.Formatter("[%(name)s] %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.levelno >= logging.CRITICAL:
                self.ros_logger.fatal(text)
            elif record.levelno >= logging.ERROR:
                self.ros_logger.error(text)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(text)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(text)
            else:
                self.ros_logger.debug(text)
        except Exception:  # a log line must never take the node down
            self.handleError(record)


def route_python_logging(ros_logger: Any, logger_name: str = "recon_ros", level: int = logging.INFO) -> RosLogHandler:
    """Attach a :class:`RosLogHandler` to ``logger_name``; returns it (``detach`` with removeHandler).

    ``propagate`` is switched off so a record is not printed twice (ROS console + Python's last resort).
    """
    logger = logging.getLogger(logger_name)
    handler = RosLogHandler(ros_logger)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler

"""Target boards: one record each in one registry, fit checks, bundle and flash."""

from partnner_tf.boards.base import Board
from partnner_tf.boards.registry import get_board, list_boards, register_board

__all__ = ["Board", "get_board", "list_boards", "register_board"]

"""The one registry of boards: explicit registration, lookup by name."""

from partnner_tf.boards.base import Board
from partnner_tf.boards.catalog import coral, generic, jetson, raspberry_pi
from partnner_tf.errors import UnknownBoardError

_BOARDS = {}


def register_board(board):
    """Add ``board`` to the registry; a name may be registered once."""
    if not isinstance(board, Board):
        raise TypeError(f"register_board: expected a Board, received {type(board).__name__}")
    if board.name in _BOARDS:
        raise ValueError(f"board {board.name!r} is already registered")
    _BOARDS[board.name] = board
    return board


def get_board(name):
    """The board registered as ``name``; a :class:`Board` is returned as it is.

    Raises:
        UnknownBoardError: listing the known names.
    """
    if isinstance(name, Board):
        return name
    try:
        return _BOARDS[name]
    except (KeyError, TypeError):
        raise UnknownBoardError(
            f"unknown board {name!r}; known boards are: {', '.join(sorted(_BOARDS))}"
        ) from None


def list_boards():
    """Every registered board, sorted by name."""
    return [_BOARDS[n] for n in sorted(_BOARDS)]


# Every built-in board, in one place (hls4ml-style explicit registration).
for _board in (*raspberry_pi.BOARDS, *coral.BOARDS, *jetson.BOARDS, *generic.BOARDS):
    register_board(_board)

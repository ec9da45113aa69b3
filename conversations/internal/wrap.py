"""Word wrapping of text that arrives in pieces (a streamed reply printed in a terminal).

``textwrap`` needs the whole paragraph; a stream gives it a few characters at a time, and the
terminal must show them as they come. :class:`StreamWrapper` writes each word as soon as the
whitespace after it arrives (only the word being typed is held back), and starts a new line
before a word that would not fit. Widths are terminal cells: East Asian wide characters take two,
combining marks none.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

__all__ = ["StreamWrapper", "cell_width"]


def cell_width(text: str) -> int:
    """How many terminal columns ``text`` takes."""
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1
    return width


class StreamWrapper:
    """Write pieces of text through ``write``, wrapped at word boundaries to ``width`` columns.

    ``column`` is where the cursor stands when the first piece comes (after a prompt such as
    ``"support › "``); continuation lines start with ``indent`` spaces. With ``width=None`` the
    text passes through untouched (output that is not a terminal). Call :meth:`finish` at the end
    of the text: it writes the word still held back.
    """

    def __init__(self, write: Callable[[str], None], *, width: int | None, column: int = 0, indent: int = 0):
        self._write = write
        self.width = width
        self.column = column
        # A hanging indent only when it leaves room for words.
        self.indent = indent if width is not None and width - indent >= 20 else 0
        self._word = ""
        self._spaces = ""
        # Nothing written on this line yet but the prompt or the indent: no spaces before the word.
        self._line_start = True

    def feed(self, text: str) -> None:
        if self.width is None:
            self._write(text)
            return
        for char in text:
            if char == "\n":
                self._place_word()
                self._spaces = ""
                self._write("\n")
                self.column = 0
                self._line_start = True
            elif char.isspace():
                self._place_word()
                self._spaces += " " if char == "\t" else char
            else:
                self._word += char

    def finish(self) -> None:
        """Write the held-back word; trailing spaces are dropped."""
        if self.width is None:
            return
        self._place_word()
        self._spaces = ""

    def break_line(self) -> None:
        """End the current line (before something else is printed), keeping the wrapper usable."""
        self.finish()
        if self.width is None or not (self._line_start and self.column == 0):
            self._write("\n")
        self.column = 0
        self._line_start = True

    def _place_word(self) -> None:
        word, self._word = self._word, ""
        if not word:
            return
        assert self.width is not None
        spaces = "" if self._line_start else self._spaces
        self._spaces = ""
        if self._line_start and self.column == 0 and self.indent:
            self._write(" " * self.indent)
            self.column = self.indent
        needed = cell_width(spaces) + cell_width(word)
        if not self._line_start and self.column + needed > self.width:
            self._new_line()
            spaces = ""
        self._write(spaces)
        self.column += cell_width(spaces)
        # A word longer than a whole line is cut where the line ends.
        while self.column + cell_width(word) > self.width:
            head = _fit(word, self.width - self.column)
            if not head:
                if self.column > self.indent:
                    self._new_line()  # a fresh line has more room
                    continue
                head = word[0]  # a wide character on a line narrower than two columns
            self._write(head)
            word = word[len(head) :]
            self._new_line()
        self._write(word)
        self.column += cell_width(word)
        self._line_start = False

    def _new_line(self) -> None:
        self._write("\n" + " " * self.indent)
        self.column = self.indent
        self._line_start = True


def _fit(word: str, room: int) -> str:
    """The longest start of ``word`` that fits in ``room`` columns."""
    used = 0
    for index, char in enumerate(word):
        used += cell_width(char)
        if used > room:
            return word[:index]
    return word

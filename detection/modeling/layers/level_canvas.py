"""Several small feature maps laid out on one canvas, so a shared 3x3 convolution runs once.

A head whose convolutions are shared by pyramid levels calls each of them once per level. On
the coarse levels (e.g. 12x12, 6x6, 3x3 at 384 px) a call costs mostly its fixed overhead:
in bfloat16 on CPU the weight gradient of a 256->256 3x3 convolution takes ~3 ms at 6x6 and
at 12x12 alike. `LevelCanvas` places the maps on one zero canvas with a zero gutter of one
pixel between them: a 3x3 'same' convolution of the canvas computes, inside each map, exactly
the sums the convolution of that map alone computes (its border pixels see the gutter's
zeros where 'same' padding puts zeros), so one call serves all of them.

Layout: the first map at the top left; the others stacked top to bottom in a column to its
right, each followed by one zero row; one zero column between the first map and the column.
"""

from keras import ops


class LevelCanvas:
    """Packs maps of fixed static sizes into one canvas and unpacks a canvas into them.

    Attributes:
      height, width: the canvas size.
    """

    def __init__(self, sizes):
        """Args:
        sizes: [(h, w)] of the maps, in packing order; static integers, at least two maps.
        """
        if len(sizes) < 2:
            raise ValueError(f"LevelCanvas needs at least two maps, got sizes {sizes}")
        self._sizes = [(int(h), int(w)) for h, w in sizes]
        (first_h, first_w), rest = self._sizes[0], self._sizes[1:]
        self._column_x = first_w + 1
        self._column_width = max(w for _, w in rest)
        rows, top = [], 0
        for h, _ in rest:
            rows.append(top)
            top += h + 1
        self._origins = [(0, 0)] + [(y, self._column_x) for y in rows]
        self.height = max(first_h, top)
        self.width = self._column_x + self._column_width

    def pack(self, maps):
        """`[[b, h_i, w_i, c]]` -> canvas `[b, height, width, c]`, zero outside the maps."""
        first, rest = maps[0], maps[1:]
        (first_h, first_w) = self._sizes[0]
        left = _pad(first, self.height - first_h, self._column_x - first_w)
        column = [_pad(m, 1, self._column_width - w) for m, (_, w) in zip(rest, self._sizes[1:])]
        column = ops.concatenate(column, axis=1)
        column = _pad(column, self.height - column.shape[1], 0)
        return ops.concatenate([left, column], axis=2)

    def unpack(self, canvas):
        """Canvas `[b, height, width, c]` -> the maps `[[b, h_i, w_i, c]]`."""
        return [
            canvas[:, y : y + h, x : x + w, :] for (h, w), (y, x) in zip(self._sizes, self._origins)
        ]


def _pad(tensor, bottom, right):
    if bottom == 0 and right == 0:
        return tensor
    return ops.pad(tensor, [[0, 0], [0, bottom], [0, right], [0, 0]])

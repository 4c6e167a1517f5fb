"""`Composite`: the build of a layer that only holds other layers.

Keras 3 builds a layer without its own `build` whose sublayers are unbuilt by running its
`call` once symbolically before the first real call (`Layer._maybe_build`), which for a
whole network is one more trace of every op. A layer made only of sublayers needs no such
run: each sublayer builds itself, from its real input, at its own first call.
"""


class Composite:
    """Mixin, listed before the Keras base class: built as soon as it is first called.

    For layers that create no variables of their own (only their sublayers do): after
    `build`, Keras refuses new state on the layer itself, not on its sublayers.
    """

    def build(self, input_shape):
        del input_shape
        self.built = True

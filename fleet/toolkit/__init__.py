"""The model toolkit: reference TinyML models, their bundles and their drift baselines.

* ``sensors`` — seeded synthetic accelerometer data and field-condition knobs (NumPy only;
  the device simulator uses it too).
* ``train`` — trains, quantises to int8 and evaluates the reference models (TensorFlow,
  the ``ml`` extra: the only module that imports it).
* ``host`` / ``scoring`` — the host reference: int8 inference with LiteRT, and what the
  outputs mean.
* ``reference`` / ``thresholds`` — reference histograms and the thresholds component.
* ``bundle`` / ``cli`` — the files a release is made of, and ``fleet model …``.

Nothing is imported here, so importing one module never pulls in TensorFlow.
"""

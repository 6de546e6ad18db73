"""quantspec conformance: torch's quantized kernels checked against the reference, bit for bit.

Layout (one idea per module):

* `strategies` — public Hypothesis strategies: qparams (power-of-two, tiny and huge
  scales; odd and extreme zero points), tie-rich float32 arrays (exact .5 ties for the
  drawn qparams, nextafter neighbours, NaN/+-inf, subnormals, huge values), QTensors of
  every dtype, per-tensor and per-channel, contiguous and channels_last, and lengths that
  end in vector tails. Strategies return data objects that print as constructor calls
  (`FloatArrayCase(x=np.array([...]), ...)`, or `FloatArrayCase.from_seed(...)` for large
  arrays), so a shrunk failure pastes straight into a check's `examples`.
* `checks` — the registry. One module per op, `checks/<op>.py`, defines an `OpCheck`
  (name, case strategy, `reference(case, profile)`, `torch(case)`, coverage `label`,
  pinned `examples`, vacuity rule) and calls `register`. Modules are discovered
  automatically; adding a check is adding a file.
* `oracles` — how checks call torch: fbgemm engine pinned, known notices silenced,
  conversions through `production.bridge`.
* `settings` — Hypothesis profiles "smoke", "default", "thorough" (registered as
  "quantspec-<name>"); derandomized and database-free in CI; Hypothesis's database and
  caches in the user's cache folder (`hypothesis_directory()`), never the working folder.
* `runner` — runs checks as properties, compares bit for bit (int_repr + qparams, or
  float bits), counts cases/elements/informative elements/labels, flags MISMATCH,
  VACUOUS and ERROR, prints a table and writes JSON.

Entry point: `quantspec conform [--profile smoke|default|thorough] [--ops OP ...] [--json FILE]`
(production/cli.py), or `conformance.runner.run(...)`.

Writing a check (see checks/quantize_per_tensor.py):

    CHECK = register(OpCheck(name="add", op="quantized::add", cases=my_strategy(),
                             reference=lambda case, profile: ..., torch=lambda case: ...,
                             label=lambda case: ["tail" if ... else "vector"]))
"""

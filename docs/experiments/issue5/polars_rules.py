import ibis.expr.operations as ops
from ibis.backends.polars.compiler import translate


@translate.register(ops.WindowFunction)
def _window(op, **kw):
    func = op.func
    if not isinstance(func, ops.Lag) or func.offset is not None or func.default is not None \
            or op.start is not None or op.end is not None:
        raise NotImplementedError(f"window {op}")
    arg = translate(func.arg, **kw)
    by = [translate(g, **kw) for g in op.group_by]
    order = [translate(k.arg, **kw) for k in op.order_by]
    desc = [not k.ascending for k in op.order_by]
    return arg.shift(1).over(partition_by=by, order_by=order, descending=desc[0] if desc else False)

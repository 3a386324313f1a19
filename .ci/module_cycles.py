#!/usr/bin/env python3
"""Report import cycles between the modules of a crate, file by file, not
counting edges between a module and its own ancestors or descendants
(issue #16: capabilities call into the cluster plumbing, never the other
way round). Usage: module_cycles.py crates/node/src; exit 1 on a cycle.

An edge is any `crate::a::b` or `super::x` path outside `#[cfg(test)] mod
tests`, resolved to the longest module prefix that exists as a file."""
import os, re, sys
root = sys.argv[1]
mods = {}
for dp, _, fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p = os.path.relpath(os.path.join(dp, f), root)
        parts = p[:-3].split(os.sep)
        if parts[-1] in ('mod', 'lib'): parts = parts[:-1]
        mods[tuple(parts)] = os.path.join(dp, f)
def resolve(path):
    best = ()
    for i in range(len(path), -1, -1):
        if tuple(path[:i]) in mods:
            return tuple(path[:i])
    return ()
edges = {m: set() for m in mods}
ref = re.compile(r'\b(crate|super)((?:::\w+)+)')
for m, f in mods.items():
    src = open(f).read()
    src = re.sub(r'//.*', '', src)
    # strip test modules
    i = src.find('#[cfg(test)]\nmod tests')
    if i >= 0: src = src[:i]
    for kind, rest in ref.findall(src):
        segs = [s for s in rest.split('::') if s]
        if kind == 'crate':
            base = []
        else:
            base = list(m)
            # `super` from a file module: its parent
            base = base[:-1]
            while segs and segs[0] == 'super':
                base = base[:-1]; segs = segs[1:]
        t = resolve(base + segs)
        if t == m or t[:len(m)] == m or m[:len(t)] == t:
            continue  # self, ancestor or descendant
        edges[m].add(t)
# Tarjan SCC
index = {}; low = {}; st = []; on = set(); out = []; c = [0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v] = low[v] = c[0]; c[0] += 1; st.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            sc(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = st.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: out.append(comp)
for v in mods:
    if v not in index: sc(v)
name = lambda m: '::'.join(m) or 'crate'
for comp in out:
    print('cycle:', ', '.join(sorted(name(m) for m in comp)))
    for m in comp:
        print('   ', name(m), '->', ', '.join(sorted(name(t) for t in edges[m] if t in comp)))
print(f'{len(mods)} modules, {sum(len(e) for e in edges.values())} edges, {len(out)} cycles')
sys.exit(1 if out else 0)

//! Maximum flow by Dinic's algorithm, on `f64` capacities.
//!
//! Why not a crate: `petgraph::algo::dinics` and `pathfinding::edmonds_karp_sparse` were measured
//! on this 2-core machine for the DADS graphs. Both build their own adjacency from a generic
//! graph on every call and needed ~0.8 ms for a 200-node chain, against a 1 ms budget for
//! 1 000 nodes. This is the textbook algorithm on flat arrays (compressed adjacency, paired
//! residual edges, iterative DFS so that deep graphs cannot overflow the stack).

/// A flow network under construction. Nodes are `0..nodes`.
pub(super) struct FlowNetwork {
    nodes: usize,
    /// Edge `e` and its residual twin `e ^ 1`.
    from: Vec<u32>,
    to: Vec<u32>,
    cap: Vec<f64>,
}

impl FlowNetwork {
    pub fn new(nodes: usize, edge_hint: usize) -> FlowNetwork {
        FlowNetwork {
            nodes,
            from: Vec::with_capacity(2 * edge_hint),
            to: Vec::with_capacity(2 * edge_hint),
            cap: Vec::with_capacity(2 * edge_hint),
        }
    }

    /// Adds `a → b` with capacity `cap` and `b → a` with capacity `back_cap`
    /// (`f64::INFINITY` for edges that must never be cut).
    pub fn add(&mut self, a: usize, b: usize, cap: f64, back_cap: f64) {
        if cap <= 0.0 && back_cap <= 0.0 {
            return;
        }
        self.from.extend([a as u32, b as u32]);
        self.to.extend([b as u32, a as u32]);
        self.cap.extend([cap, back_cap]);
    }

    /// Runs max-flow from `s` to `t` and returns, per node, whether it is on `s`'s side of a
    /// minimum cut (reachable from `s` in the residual network).
    pub fn min_cut(mut self, s: usize, t: usize) -> Vec<bool> {
        let (start, adj) = self.adjacency();
        let finite: f64 = self.cap.iter().filter(|c| c.is_finite()).sum();
        let eps = finite * 1e-12 + f64::MIN_POSITIVE;
        let mut level = vec![u32::MAX; self.nodes];
        let mut next = vec![0usize; self.nodes];
        let mut queue = Vec::with_capacity(self.nodes);
        let mut path: Vec<usize> = Vec::new();
        while self.levels(s, &start, &adj, eps, &mut level, &mut queue) && level[t] != u32::MAX {
            next.copy_from_slice(&start[..self.nodes]);
            let mut v = s;
            path.clear();
            loop {
                if v == t {
                    let push = path
                        .iter()
                        .map(|&e| self.cap[e])
                        .fold(f64::INFINITY, f64::min);
                    // Every s–t path in a DADS network holds a finite edge (see `mincut`).
                    debug_assert!(push.is_finite(), "unbounded augmenting path");
                    let mut cut_at = path.len();
                    for (i, &e) in path.iter().enumerate() {
                        self.cap[e] -= push;
                        self.cap[e ^ 1] += push;
                        if self.cap[e] <= eps && cut_at == path.len() {
                            cut_at = i;
                        }
                    }
                    path.truncate(cut_at);
                    v = path.last().map_or(s, |&e| self.to[e] as usize);
                    continue;
                }
                let mut advanced = false;
                while next[v] < start[v + 1] {
                    let e = adj[next[v]];
                    let w = self.to[e] as usize;
                    if self.cap[e] > eps && level[w] == level[v] + 1 {
                        path.push(e);
                        v = w;
                        advanced = true;
                        break;
                    }
                    next[v] += 1;
                }
                if advanced {
                    continue;
                }
                // Dead end: retire v for this phase and step back.
                level[v] = u32::MAX;
                match path.pop() {
                    Some(e) => {
                        v = self.from[e] as usize;
                        next[v] += 1;
                    }
                    None => break,
                }
            }
        }
        self.levels(s, &start, &adj, eps, &mut level, &mut queue);
        level.iter().map(|&l| l != u32::MAX).collect()
    }

    /// Breadth-first levels from `s` over edges with residual capacity; true if any node was
    /// reached besides `s`.
    fn levels(
        &self,
        s: usize,
        start: &[usize],
        adj: &[usize],
        eps: f64,
        level: &mut [u32],
        queue: &mut Vec<usize>,
    ) -> bool {
        level.fill(u32::MAX);
        level[s] = 0;
        queue.clear();
        queue.push(s);
        let mut head = 0;
        while head < queue.len() {
            let v = queue[head];
            head += 1;
            for &e in &adj[start[v]..start[v + 1]] {
                let w = self.to[e] as usize;
                if self.cap[e] > eps && level[w] == u32::MAX {
                    level[w] = level[v] + 1;
                    queue.push(w);
                }
            }
        }
        queue.len() > 1
    }

    /// Compressed adjacency: the edges leaving v are `adj[start[v]..start[v + 1]]`.
    fn adjacency(&self) -> (Vec<usize>, Vec<usize>) {
        let mut start = vec![0usize; self.nodes + 1];
        for &a in &self.from {
            start[a as usize + 1] += 1;
        }
        for v in 0..self.nodes {
            start[v + 1] += start[v];
        }
        let mut fill = start.clone();
        let mut adj = vec![0usize; self.from.len()];
        for (e, &a) in self.from.iter().enumerate() {
            adj[fill[a as usize]] = e;
            fill[a as usize] += 1;
        }
        (start, adj)
    }
}

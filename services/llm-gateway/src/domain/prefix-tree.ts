/** Options of {@link PrefixTree}. */
export interface PrefixTreeOptions {
  /** Characters per chunk (tree edge). Default 64 (≈ 16 tokens, an SGLang page of a few tokens). */
  chunkChars?: number;
  /**
   * Most chunks remembered per tenant (replica). Past it, the least recently used chunks of that tenant
   * are forgotten (down to 90 % of the limit). Default 65 536 chunks (≈ 4 MiB of prompt text per replica).
   */
  maxChunksPerTenant?: number;
}

/** Result of {@link PrefixTree.match}. */
export interface PrefixMatch {
  /** Length of the matched text (chars). */
  totalChars: number;
  /** For each tenant holding a prefix of the text: how many leading chars of the text it holds. */
  matchedChars: Map<string, number>;
}

interface Node {
  key: string;
  parent: Node | undefined;
  depth: number;
  children: Map<string, Node>;
  /** tenant → logical time of its last use of this node. */
  tenants: Map<string, number>;
}

function newNode(key: string, parent: Node | undefined): Node {
  return { key, parent, depth: parent ? parent.depth + 1 : 0, children: new Map(), tenants: new Map() };
}

/**
 * An approximate prefix tree of routed prompts, one logical tree per tenant (replica) sharing one trie, in the
 * spirit of the SGLang model gateway's cache-aware router: the gateway never sees the replicas' real KV
 * caches, it remembers which prompt prefixes it sent where. Texts are cut into fixed-size chunks (the trie's
 * edges), so a match is counted in whole chunks. Time is a logical clock (one tick per insert), so the tree is
 * deterministic. Memory is bounded per tenant by LRU eviction.
 */
export class PrefixTree {
  private readonly root = newNode("", undefined);
  private readonly chunkChars: number;
  private readonly maxChunks: number;
  private readonly sizes = new Map<string, number>();
  private clock = 0;

  constructor(options: PrefixTreeOptions = {}) {
    this.chunkChars = Math.max(1, Math.floor(options.chunkChars ?? 64));
    this.maxChunks = Math.max(1, Math.floor(options.maxChunksPerTenant ?? 65_536));
  }

  private chunks(text: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < text.length; i += this.chunkChars) out.push(text.slice(i, i + this.chunkChars));
    return out;
  }

  /** Records that `text` was sent to `tenant` (marks every chunk of its path as used now). */
  insert(text: string, tenant: string): void {
    const now = ++this.clock;
    let node = this.root;
    let added = 0;
    for (const chunk of this.chunks(text)) {
      let child = node.children.get(chunk);
      if (child === undefined) {
        child = newNode(chunk, node);
        node.children.set(chunk, child);
      }
      if (!child.tenants.has(tenant)) added++;
      child.tenants.set(tenant, now);
      node = child;
    }
    if (added > 0) {
      const size = (this.sizes.get(tenant) ?? 0) + added;
      this.sizes.set(tenant, size);
      if (size > this.maxChunks) this.evict(tenant, Math.floor(this.maxChunks * 0.9));
    }
  }

  /**
   * How much of `text` each tenant holds as a prefix (in chars, whole chunks; the last chunk may be partial and
   * then only matches an identical partial chunk). Pure: does not refresh LRU times.
   */
  match(text: string): PrefixMatch {
    const matchedChars = new Map<string, number>();
    let node = this.root;
    let chars = 0;
    for (const chunk of this.chunks(text)) {
      const child = node.children.get(chunk);
      if (child === undefined) break;
      chars += chunk.length;
      for (const t of child.tenants.keys()) matchedChars.set(t, chars);
      node = child;
    }
    return { totalChars: text.length, matchedChars };
  }

  /** Number of chunks remembered for `tenant`. */
  size(tenant: string): number {
    return this.sizes.get(tenant) ?? 0;
  }

  /** Total number of nodes in the trie (for tests and memory metrics). */
  nodeCount(): number {
    let n = 0;
    const stack = [...this.root.children.values()];
    while (stack.length > 0) {
      const node = stack.pop()!;
      n++;
      for (const c of node.children.values()) stack.push(c);
    }
    return n;
  }

  /** Forgets everything about `tenant` (a replica was removed). */
  removeTenant(tenant: string): void {
    this.evict(tenant, 0);
    this.sizes.delete(tenant);
  }

  private evict(tenant: string, keep: number): void {
    const nodes: Node[] = [];
    const stack = [...this.root.children.values()];
    while (stack.length > 0) {
      const node = stack.pop()!;
      if (node.tenants.has(tenant)) {
        nodes.push(node);
        for (const c of node.children.values()) stack.push(c);
      }
    }
    // Oldest first; among equal times the deepest first (a parent is always used at least as late as its
    // children, so this removes leaves before their parents and keeps every tenant's set prefix-closed).
    nodes.sort((a, b) => a.tenants.get(tenant)! - b.tenants.get(tenant)! || b.depth - a.depth);
    let size = nodes.length;
    for (const node of nodes) {
      if (size <= keep) break;
      node.tenants.delete(tenant);
      size--;
      let n: Node | undefined = node;
      while (n?.parent && n.tenants.size === 0 && n.children.size === 0) {
        n.parent.children.delete(n.key);
        n = n.parent;
      }
    }
    this.sizes.set(tenant, size);
  }
}

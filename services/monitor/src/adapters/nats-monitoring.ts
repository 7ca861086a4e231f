import type { Sample } from "../snapshot.ts";

/**
 * NATS server metrics in the names NATS operators chart (prometheus-nats-exporter's `-varz` and `-jsz=all`),
 * read from the servers' monitoring endpoints (`http://host:8222`): `gnatsd_varz_<field>{server_id}` for every
 * numeric field of `/varz`, and from `/jsz?accounts=true&streams=true&consumers=true`:
 * `jetstream_stream_<field>{server_id, server_name, account, stream_name}` (`total_messages`, `total_bytes`,
 * `first_seq`, `last_seq`, `consumer_count`, `subject_count`) and `jetstream_consumer_<field>{…, consumer_name}`
 * (`num_pending`, `num_ack_pending`, `num_redelivered`, `num_waiting`, `delivered_consumer_seq`,
 * `delivered_stream_seq`, `ack_floor_consumer_seq`, `ack_floor_stream_seq`). Every value is a gauge, as in the
 * exporter. In a cluster, only the leader of a stream or consumer reports it, so nothing is counted per replica.
 */
export type NatsFamilies = Map<string, Sample[]>;

/** `/varz` fields exported (the exporter's numeric top-level fields). */
const VARZ_FIELDS = [
  "connections",
  "total_connections",
  "routes",
  "remotes",
  "leafnodes",
  "in_msgs",
  "out_msgs",
  "in_bytes",
  "out_bytes",
  "slow_consumers",
  "subscriptions",
  "mem",
  "cpu",
  "cores",
  "max_connections",
  "max_payload",
  "max_pending",
] as const;

const add = (f: NatsFamilies, name: string, labels: Record<string, string>, value: unknown) => {
  if (typeof value !== "number" || !Number.isFinite(value)) return;
  let list = f.get(name);
  if (!list) {
    list = [];
    f.set(name, list);
  }
  list.push({ labels, value });
};

/** Adds the `gnatsd_varz_*` samples of one server's `/varz` document to `into`. */
export function varzSamples(varz: Record<string, unknown>, into: NatsFamilies = new Map()): NatsFamilies {
  const labels = { server_id: String(varz.server_id ?? "") };
  for (const field of VARZ_FIELDS) add(into, `gnatsd_varz_${field}`, labels, varz[field]);
  return into;
}

interface JszConsumer {
  name: string;
  stream_name: string;
  cluster?: { leader?: string };
  delivered?: { consumer_seq?: number; stream_seq?: number };
  ack_floor?: { consumer_seq?: number; stream_seq?: number };
  num_ack_pending?: number;
  num_redelivered?: number;
  num_waiting?: number;
  num_pending?: number;
}
interface JszStream {
  name: string;
  cluster?: { leader?: string };
  state?: {
    messages?: number;
    bytes?: number;
    first_seq?: number;
    last_seq?: number;
    consumer_count?: number;
    num_subjects?: number;
  };
  consumer_detail?: JszConsumer[];
}
interface Jsz {
  server_id?: string;
  account_details?: { name: string; stream_detail?: JszStream[] }[];
}

/**
 * Adds the `jetstream_*` samples of one server's `/jsz` document to `into`. `serverName` is the server's name
 * (from its `/varz`): with several servers, a stream or consumer is reported only by the server its cluster
 * info names as leader (a single server has no leader field and reports everything).
 */
export function jszSamples(jsz: Jsz, serverName: string, into: NatsFamilies = new Map()): NatsFamilies {
  const server_id = String(jsz.server_id ?? "");
  const leads = (c?: { leader?: string }) => c?.leader === undefined || c.leader === serverName;
  for (const account of jsz.account_details ?? []) {
    for (const s of account.stream_detail ?? []) {
      const labels = { server_id, server_name: serverName, account: account.name, stream_name: s.name };
      if (leads(s.cluster)) {
        add(into, "jetstream_stream_total_messages", labels, s.state?.messages);
        add(into, "jetstream_stream_total_bytes", labels, s.state?.bytes);
        add(into, "jetstream_stream_first_seq", labels, s.state?.first_seq);
        add(into, "jetstream_stream_last_seq", labels, s.state?.last_seq);
        add(into, "jetstream_stream_consumer_count", labels, s.state?.consumer_count);
        add(into, "jetstream_stream_subject_count", labels, s.state?.num_subjects);
      }
      for (const c of s.consumer_detail ?? []) {
        if (!leads(c.cluster)) continue;
        const cl = { ...labels, consumer_name: c.name };
        add(into, "jetstream_consumer_num_pending", cl, c.num_pending);
        add(into, "jetstream_consumer_num_ack_pending", cl, c.num_ack_pending);
        add(into, "jetstream_consumer_num_redelivered", cl, c.num_redelivered);
        add(into, "jetstream_consumer_num_waiting", cl, c.num_waiting);
        add(into, "jetstream_consumer_delivered_consumer_seq", cl, c.delivered?.consumer_seq);
        add(into, "jetstream_consumer_delivered_stream_seq", cl, c.delivered?.stream_seq);
        add(into, "jetstream_consumer_ack_floor_consumer_seq", cl, c.ack_floor?.consumer_seq);
        add(into, "jetstream_consumer_ack_floor_stream_seq", cl, c.ack_floor?.stream_seq);
      }
    }
  }
  return into;
}

/** Every family name {@link readNatsMonitoring} can fill, with its help text (registered up front). */
export const NATS_FAMILIES: Record<string, string> = {
  ...Object.fromEntries(VARZ_FIELDS.map((f) => [`gnatsd_varz_${f}`, `nats-server /varz ${f}`])),
  jetstream_stream_total_messages: "Messages in the stream (/jsz)",
  jetstream_stream_total_bytes: "Bytes in the stream (/jsz)",
  jetstream_stream_first_seq: "First sequence of the stream (/jsz)",
  jetstream_stream_last_seq: "Last sequence of the stream (/jsz)",
  jetstream_stream_consumer_count: "Consumers of the stream (/jsz)",
  jetstream_stream_subject_count: "Subjects in the stream (/jsz)",
  jetstream_consumer_num_pending: "Messages of the stream the consumer has not delivered yet (/jsz)",
  jetstream_consumer_num_ack_pending: "Messages delivered and not acknowledged yet (/jsz)",
  jetstream_consumer_num_redelivered: "Messages delivered more than once (/jsz)",
  jetstream_consumer_num_waiting: "Pull requests waiting (0 = nobody is fetching) (/jsz)",
  jetstream_consumer_delivered_consumer_seq: "Last delivered consumer sequence (/jsz)",
  jetstream_consumer_delivered_stream_seq: "Last delivered stream sequence (/jsz)",
  jetstream_consumer_ack_floor_consumer_seq: "Acknowledgement floor, consumer sequence (/jsz)",
  jetstream_consumer_ack_floor_stream_seq: "Acknowledgement floor, stream sequence (/jsz)",
};

/**
 * Reads `/varz` and `/jsz` of every server in `urls` (monitoring base URLs) and returns their samples by family.
 * A server that does not answer within `timeoutMs` is left out (its series vanish, as with the exporter).
 */
export async function readNatsMonitoring(urls: string[], timeoutMs = 3000): Promise<NatsFamilies> {
  const out: NatsFamilies = new Map();
  await Promise.all(
    urls.map(async (base) => {
      try {
        const get = async (path: string) => {
          const res = await fetch(`${base.replace(/\/$/, "")}${path}`, {
            signal: AbortSignal.timeout(timeoutMs),
          });
          if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
          return (await res.json()) as Record<string, unknown>;
        };
        const varz = await get("/varz");
        const jsz = await get("/jsz?accounts=true&streams=true&consumers=true");
        varzSamples(varz, out);
        jszSamples(jsz as Jsz, String(varz.server_name ?? varz.server_id ?? ""), out);
      } catch {
        // unreachable server: no samples this scrape
      }
    }),
  );
  return out;
}

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/**
 * Prometheus text parsed by the official Python client's parser (Debian's
 * python3-prometheus-client, which .ci/run installs): strict, so malformed exposition fails the
 * test. Debian's own interpreter, not whatever `python3` comes first on PATH.
 */
const PYTHON = '/usr/bin/python3';
const SCRIPT = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]})
print(json.dumps(out))
`;

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  type: string;
  samples: Sample[];
}

export function prometheusParserAvailable(): boolean {
  if (!existsSync(PYTHON)) return false;
  try {
    execFileSync(PYTHON, ['-c', 'import prometheus_client.parser'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Whether tests that parse metrics can run: false (and a loud warning) on a laptop without the parser; throws under CI=true. */
export function requirePrometheusParser(): boolean {
  if (prometheusParserAvailable()) return true;
  if (process.env.CI === 'true') throw new Error('python3-prometheus-client is required under CI=true (.ci/run installs it)');
  console.warn('SKIPPED metrics tests: the Prometheus parser is missing (apt-get install python3-prometheus-client)');
  return false;
}

/** Throws (with the parser's message) on text that is not valid Prometheus exposition. */
export function parsePrometheus(text: string): MetricFamily[] {
  return JSON.parse(execFileSync(PYTHON, ['-c', SCRIPT], { input: text, encoding: 'utf8', maxBuffer: 64 << 20 })) as MetricFamily[];
}

/** The value of the sample `name` whose labels include `labels`; throws when there is none. */
export function sampleValue(families: MetricFamily[], name: string, labels: Record<string, string> = {}): number {
  for (const f of families)
    for (const s of f.samples)
      if (s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)) return s.value;
  throw new Error(`no sample ${name} with ${JSON.stringify(labels)}`);
}

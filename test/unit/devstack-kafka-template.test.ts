/** The dev stack's KRaft format template: one per Kafka build and broker settings; each copy with ids of its own. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatFromTemplate, kafkaFormatTemplateName, withFreshIds, type FormatKey } from '../../shared/devstack/kafka-template.ts';
import { newClusterId, renderServerProperties } from '../../shared/devstack/kafka.ts';
import { reapStaleTempDirs } from '../../shared/devstack/temp-dirs.ts';

const key: FormatKey = { version: '4.4.0', libsDir: '/cache/kafka-4.4.0/libs', props: renderServerProperties({ port: 0, controllerPort: 0, logDir: '', version: '4.4.0' }) };

test('the format template name is the same for the same release, jars and settings, and differs when any of them does', () => {
  const name = kafkaFormatTemplateName(key);
  assert.match(name, /^shardbridge-kafka-format-[0-9a-f]{16}$/);
  assert.equal(kafkaFormatTemplateName({ ...key }), name);
  const others = [
    kafkaFormatTemplateName({ ...key, version: '3.9.1' }),
    kafkaFormatTemplateName({ ...key, libsDir: '/cache/kafka-4.4.0-other/libs' }),
    kafkaFormatTemplateName({ ...key, props: key.props.replace('node.id=1', 'node.id=2') }),
    kafkaFormatTemplateName({ ...key, props: renderServerProperties({ port: 0, controllerPort: 0, logDir: '', version: '3.9.1' }) }),
  ];
  assert.equal(new Set([name, ...others]).size, others.length + 1);
});

test('fresh ids replace the cluster id and the log dir id, and nothing else', () => {
  const meta = '#\n#Mon Dec 07 23:21:29 UTC 2026\nnode.id=1\ndirectory.id=dhNNqHxO2F_qRns6M2ygHg\nversion=1\ncluster.id=8iNVb0DOMK8LyuCQW8nJ7g\n';
  assert.equal(
    withFreshIds(meta, { clusterId: 'AAAAAAAAAAAAAAAAAAAAAQ', directoryId: 'BBBBBBBBBBBBBBBBBBBBBQ' }),
    '#\n#Mon Dec 07 23:21:29 UTC 2026\nnode.id=1\ndirectory.id=BBBBBBBBBBBBBBBBBBBBBQ\nversion=1\ncluster.id=AAAAAAAAAAAAAAAAAAAAAQ\n',
  );
});

test('the format runs once per key: each broker gets a copy with a cluster id and log dir id of its own; the template is never reaped', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-kafka-template-'));
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));
  let formats = 0;
  const fakeFormat = async (dir: string) => {
    formats++;
    fs.writeFileSync(path.join(dir, 'meta.properties'), `node.id=1\ndirectory.id=${newClusterId()}\nversion=1\ncluster.id=${newClusterId()}\n`);
    fs.mkdirSync(path.join(dir, '__cluster_metadata-0'));
    fs.writeFileSync(path.join(dir, '__cluster_metadata-0', '00000000000000000000-0000000000.checkpoint'), 'bootstrap');
  };
  const ids = (dir: string) => /directory\.id=(\S+)[\s\S]*cluster\.id=(\S+)/.exec(fs.readFileSync(path.join(dir, 'meta.properties'), 'utf8'))!.slice(1);
  const brokers = [path.join(root, 'a', 'data'), path.join(root, 'b', 'data')];
  for (const logDir of brokers) await formatFromTemplate(key, logDir, fakeFormat, newClusterId, root);
  assert.equal(formats, 1);
  const all = [path.join(root, kafkaFormatTemplateName(key)), ...brokers].flatMap(ids);
  assert.equal(new Set(all).size, all.length, 'no two cluster or log dir ids alike');
  for (const logDir of brokers) assert.equal(fs.readFileSync(path.join(logDir, '__cluster_metadata-0', '00000000000000000000-0000000000.checkpoint'), 'utf8'), 'bootstrap');
  await formatFromTemplate({ ...key, version: '3.9.1' }, path.join(root, 'c', 'data'), fakeFormat, newClusterId, root);
  assert.equal(formats, 2);
  assert.deepEqual(reapStaleTempDirs(root), []);
});

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.hdfs.server.datanode.DataNode;

/**
 * Runs an HDFS MiniDFSCluster for Weir's tests: a NameNode on the port given (0: any) and the
 * DataNodes asked for, with its data under the directory given, and any KEY=VALUE arguments after
 * those set in its configuration over the defaults below. It prints
 * "namenode HOST:PORT" once the cluster is up, then obeys commands on standard input, answering
 * "ok" or "error: ...": "stop-datanode I", "start-datanode I" (stopped ones, same ports),
 * "restart-datanode I", "stop-namenode", "start-namenode". It shuts down at "shutdown" or when
 * its input ends (the test that started it is gone).
 */
public final class MiniHdfs {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: MiniHdfs NAMENODE_PORT DATANODES DIR [KEY=VALUE...]");
            System.exit(2);
        }
        int port = Integer.parseInt(args[0]);
        int datanodes = Integer.parseInt(args[1]);
        Configuration conf = new Configuration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, args[2]);
        conf.setBoolean("dfs.permissions.enabled", false);
        // Small blocks and quick heartbeats, so that tests see DataNodes come and go soon.
        conf.setLong("dfs.blocksize", 1 << 20);
        conf.setInt("dfs.heartbeat.interval", 1);
        conf.setInt("dfs.namenode.heartbeat.recheck-interval", 5000);
        conf.setBoolean("dfs.client.block.write.replace-datanode-on-failure.enable", false);
        for (int i = 3; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) {
                System.err.println("MiniHdfs: " + args[i] + " is not KEY=VALUE");
                System.exit(2);
            }
            conf.set(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
                .nameNodePort(port).numDataNodes(datanodes).format(true).build();
        cluster.waitActive();
        System.out.println("namenode 127.0.0.1:" + cluster.getNameNodePort());
        System.out.flush();
        List<MiniDFSCluster.DataNodeProperties> stopped = new ArrayList<>();
        for (int i = 0; i < datanodes; i++) {
            stopped.add(null);
        }
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] f = line.trim().split("\\s+");
            try {
                switch (f[0]) {
                    case "shutdown":
                        cluster.shutdown();
                        System.out.println("ok");
                        return;
                    case "stop-datanode": {
                        int i = Integer.parseInt(f[1]);
                        DataNode dn = cluster.getDataNodes().get(i);
                        stopped.set(i, cluster.stopDataNode(dn.getDatanodeId().getXferAddr()));
                        break;
                    }
                    case "start-datanode": {
                        int i = Integer.parseInt(f[1]);
                        if (stopped.get(i) == null) {
                            throw new IllegalStateException("datanode " + i + " is not stopped");
                        }
                        cluster.restartDataNode(stopped.get(i), true);
                        stopped.set(i, null);
                        cluster.waitActive();
                        break;
                    }
                    case "restart-datanode":
                        cluster.restartDataNode(Integer.parseInt(f[1]), true);
                        cluster.waitActive();
                        break;
                    case "stop-namenode":
                        cluster.shutdownNameNode(0);
                        break;
                    case "start-namenode":
                        cluster.restartNameNode(0, true);
                        break;
                    default:
                        throw new IllegalArgumentException("unknown command " + f[0]);
                }
                System.out.println("ok");
            } catch (Exception e) {
                System.out.println("error: " + e);
            }
            System.out.flush();
        }
        cluster.shutdown();
    }
}

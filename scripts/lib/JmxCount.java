// JmxCount URL PATTERN ATTRIBUTE: prints the sum of ATTRIBUTE over every MBean matching the
// ObjectName PATTERN on the JMX server at URL (host:port). Run as a single-file program
// (`java scripts/lib/JmxCount.java 127.0.0.1:9999 'kafka.network:type=RequestMetrics,*' Count`);
// scripts/bench reads the servers' own request and write counters with it.
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public class JmxCount {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: JmxCount HOST:PORT OBJECT_NAME_PATTERN ATTRIBUTE");
            System.exit(2);
        }
        JMXServiceURL url = new JMXServiceURL("service:jmx:rmi:///jndi/rmi://" + args[0] + "/jmxrmi");
        try (JMXConnector c = JMXConnectorFactory.connect(url)) {
            MBeanServerConnection s = c.getMBeanServerConnection();
            double sum = 0;
            for (ObjectName n : s.queryNames(new ObjectName(args[1]), null)) {
                Object v = s.getAttribute(n, args[2]);
                if (v instanceof Number) {
                    sum += ((Number) v).doubleValue();
                }
            }
            System.out.printf("%.0f%n", sum);
        }
    }
}

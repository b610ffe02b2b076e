import { afterEach, describe, expect, it } from "vitest";
import { Ros, Topic } from "roslib";
import { TestRosbridge } from "./rosbridge-server.ts";

const servers: TestRosbridge[] = [];
const clients: Ros[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.stop();
});

async function serve(dialect: 1 | 2): Promise<TestRosbridge> {
  const s = await TestRosbridge.create({ dialect });
  servers.push(s);
  return s;
}

async function connect(url: string): Promise<Ros> {
  const ros = new Ros({});
  clients.push(ros);
  await new Promise<void>((resolve, reject) => {
    ros.once("connection", () => resolve());
    ros.once("error", reject);
    void ros.connect(url);
  });
  return ros;
}

const until = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("test rosbridge server with real roslib", () => {
  it("routes a publish from one roslib client to another and records it", async () => {
    const s = await serve(2);
    const a = await connect(s.url);
    const b = await connect(s.url);
    const got: unknown[] = [];
    new Topic({ ros: b, name: "/chatter", messageType: "std_msgs/Float64MultiArray" }).subscribe((m) => got.push(m));
    const pub = new Topic({ ros: a, name: "/chatter", messageType: "std_msgs/msg/Float64MultiArray" });
    await until(() => s.ops.some((o) => o.op === "subscribe"));
    pub.publish({ data: [1, 2.5] });
    await until(() => got.length === 1);
    expect(got[0]).toEqual({ layout: { dim: [], data_offset: 0 }, data: [1, 2.5] });
    expect(s.received("/chatter")).toHaveLength(1);
    expect(s.received("/chatter")[0]?.type).toBe("std_msgs/Float64MultiArray");
    expect(s.errors).toEqual([]);
  });

  it("speaks ROS 1 and ROS 2 time formats and type names", async () => {
    const s1 = await serve(1);
    const r1 = await connect(s1.url);
    const t1 = new Topic({ ros: r1, name: "/traj", messageType: "trajectory_msgs/JointTrajectory" });
    t1.publish({ joint_names: ["a"], points: [{ positions: [1], time_from_start: { secs: 0, nsecs: 5e8 } }] });
    t1.publish({ joint_names: ["a"], points: [{ positions: [1], time_from_start: { sec: 0, nanosec: 5e8 } }] });
    await until(() => s1.delivered.length + s1.errors.length >= 2);
    expect(s1.delivered).toHaveLength(1);
    expect(s1.delivered[0]?.msg).toMatchObject({ header: { seq: 0, stamp: { secs: 0, nsecs: 0 }, frame_id: "" } });
    expect(s1.errors[0]).toMatch(/NonexistentFieldException: duration has no field 'sec' in ROS 1/);
    const r1b = await connect(s1.url);
    new Topic({ ros: r1b, name: "/x", messageType: "std_msgs/msg/Bool" }).advertise();
    await until(() => s1.errors.length === 2);
    expect(s1.errors[1]).toMatch(/std_msgs\/msg\/Bool is not a ROS 1 message type name/);

    const s2 = await serve(2);
    const r2 = await connect(s2.url);
    new Topic({ ros: r2, name: "/traj", messageType: "trajectory_msgs/msg/JointTrajectory" }).publish({
      joint_names: ["a"],
      points: [{ positions: [1], time_from_start: { sec: 1, nanosec: 0 } }],
    });
    await until(() => s2.delivered.length === 1);
    expect(s2.delivered[0]?.msg.header).toEqual({ stamp: { sec: 0, nanosec: 0 }, frame_id: "" });
  });

  it("rejects wrong shapes as rosbridge does: NaN (sent as null), strings, unknown fields, type conflicts", async () => {
    const s = await serve(2);
    const r = await connect(s.url);
    const t = new Topic({ ros: r, name: "/cmd", messageType: "std_msgs/Float64MultiArray" });
    t.publish({ data: [1, NaN] });
    t.publish({ data: ["1"] });
    t.publish({ values: [1] });
    new Topic({ ros: r, name: "/cmd", messageType: "std_msgs/Float32MultiArray" }).advertise();
    await until(() => s.errors.length === 4);
    expect(s.delivered).toHaveLength(0);
    expect(s.errors[0]).toMatch(/msg\.data\[1\]: FieldTypeMismatchException: expected float64, got null/);
    expect(s.errors[1]).toMatch(/msg\.data\[0\]: FieldTypeMismatchException/);
    expect(s.errors[2]).toMatch(/NonexistentFieldException: std_msgs\/Float64MultiArray has no field 'values'/);
    expect(s.errors[3]).toMatch(/TypeConflictException/);
  });

  it("answers /rosapi/topic_type and delivers ROS-side publishes to subscribers", async () => {
    const s = await serve(2);
    s.declareTopic("/joint_states", "sensor_msgs/JointState");
    const r = await connect(s.url);
    const type = await new Promise<string>((resolve, reject) =>
      r.getTopicType("/joint_states", resolve, (e) => reject(new Error(String(e)))),
    );
    expect(type).toBe("sensor_msgs/JointState");
    const got: { name: string[]; position: number[] }[] = [];
    new Topic<{ name: string[]; position: number[] }>({
      ros: r,
      name: "/joint_states",
      messageType: "sensor_msgs/JointState",
    }).subscribe((m) => got.push(m));
    await until(() => s.ops.some((o) => o.op === "subscribe"));
    s.publishFromRos("/joint_states", "sensor_msgs/JointState", { name: ["a", "b"], position: [0.5, -1] });
    await until(() => got.length === 1);
    expect(got[0]?.position).toEqual([0.5, -1]);
    expect(got[0]?.name).toEqual(["a", "b"]);
  });

  it("stops routing after unsubscribe and records unadvertise", async () => {
    const s = await serve(2);
    const a = await connect(s.url);
    const b = await connect(s.url);
    const got: unknown[] = [];
    const sub = new Topic({ ros: b, name: "/x", messageType: "std_msgs/Bool" });
    sub.subscribe((m) => got.push(m));
    const pub = new Topic({ ros: a, name: "/x", messageType: "std_msgs/Bool" });
    await until(() => s.ops.some((o) => o.op === "subscribe"));
    pub.publish({ data: true });
    await until(() => got.length === 1);
    sub.unsubscribe();
    await until(() => s.ops.some((o) => o.op === "unsubscribe" && o.topic === "/x"));
    pub.publish({ data: false });
    pub.unadvertise();
    await until(() => s.ops.some((o) => o.op === "unadvertise" && o.topic === "/x"));
    expect(s.received("/x").map((d) => d.msg)).toEqual([{ data: true }, { data: false }]);
    expect(got).toEqual([{ data: true }]);
  });

  it("stops and restarts on the same port; roslib reconnects when told to", async () => {
    const s = await serve(2);
    const url = s.url;
    const r = await connect(url);
    let closes = 0;
    r.on("close", () => closes++);
    await s.stop();
    await until(() => closes === 1);
    expect(r.isConnected).toBe(false);
    await s.start();
    expect(s.url).toBe(url);
    expect(s.run).toBe(2);
    await new Promise<void>((resolve) => {
      r.once("connection", () => resolve());
      void r.connect(url);
    });
    expect(r.isConnected).toBe(true);
    expect(s.clientCount).toBe(1);
  });
});
